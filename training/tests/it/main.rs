//! saring-train's integration tests: the shipped model on unseen traffic, and the CLI end to end.

mod cli;
mod naive_gate;
mod shipped_model;
