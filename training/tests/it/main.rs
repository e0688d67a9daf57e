//! saring-train's integration tests: the shipped model on unseen traffic, and the CLI end to end.

mod cli;
mod shipped_model;
