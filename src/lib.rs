//! ocaas: self-hosted OpenClaw as a Service. See README.md for the layout.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod docs;
pub mod error;
pub mod extract;
pub mod health;
pub mod timefmt;
pub mod runtime;
pub mod instances;
pub mod files;
pub mod terminal;
pub mod chat;
pub mod vnc;
pub mod web;
pub mod wsbridge;
