//! Integration tests: the real server, a real PostgreSQL, real HTTP.

mod account;
mod admin_cli;
mod agent;
mod audit;
mod auth;
mod browser;
mod chat;
mod dashboard;
mod deploy;
mod desktop;
mod exec;
mod files;
mod helpers;
mod instances;
mod logs;
mod meta;
mod metrics;
mod openapi;
mod quickstart;
mod request_errors;
mod serve;
mod sse;
mod standin;
mod terminal;
mod webdriver;
mod ws;
