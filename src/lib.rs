//! ocaas: self-hosted OpenClaw as a Service. The layers, bottom to top (see docs/architecture.md):
//! shared foundations, the state, the domains, and the router and serve.

// Foundations: no ocaas imports above this line's neighbours.
pub mod binary;
pub mod config;
pub mod db;
pub mod error;
pub mod metrics;
pub mod net;
pub mod ratelimit;
pub mod runtime;
pub mod secrets;
pub mod sse;
pub mod timefmt;

// The state every handler reads, and the shared HTTP pieces built on it.
pub mod extract;
pub mod inflight;
pub mod state;
pub mod wsbridge;

// Domains: one folder each.
pub mod audit;
pub mod auth;
pub mod broker;
pub mod chat;
pub mod docs;
pub mod files;
pub mod gateway;
pub mod health;
pub mod instances;
pub mod mcp;
pub mod nodes;
pub mod orgs;
pub mod snapshots;
pub mod terminal;
pub mod vnc;
pub mod web;
pub mod webhooks;

// The top: routes, serving, the command line.
pub mod cli;
pub mod router;
pub mod serve;
