//! Integration tests of keyledger-bus; each test starts its own nats-server.

mod support;

mod behaviour;
mod canary;
mod exactly_once;
mod expiry;
mod permissions;
mod python;
mod replica;
mod schema;
mod tail_loss;
