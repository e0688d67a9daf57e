//! `saring-train`'s exit codes (sysexits.h), so a pipeline can tell a refused model from a missing file:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | any other failure |
//! | 2 | a malformed command line (clap) |
//! | 3 | refused: the model does not beat the naive rule (`fit` without `--allow-worse-than-naive`, `generalisation --require-positive`) |
//! | 64 | an argument out of range |
//! | 65 | bad input data (a malformed event line with `--strict`, an unreadable model artifact) |
//! | 66 | an input that cannot be read |
//! | 73 | an output that cannot be written |
//!
//! The errors carry their kind as an `anyhow` context (or as the error itself), found by [`code`].

use std::fmt;

macro_rules! kind {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }

        impl std::error::Error for $name {}
    };
}

kind!(
    /// The model does not beat the naive rule, and writing it was not forced.
    Refused
);
kind!(
    /// An argument out of its range.
    Usage
);
kind!(
    /// Bad input data.
    BadData
);
kind!(
    /// An input that cannot be read (the message names it).
    Input
);
kind!(
    /// An output that cannot be written (the message names it).
    Output
);

/// The exit code for `error` (the table above).
pub fn code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<Refused>().is_some() {
        3
    } else if error.downcast_ref::<Usage>().is_some() {
        64
    } else if error.downcast_ref::<Output>().is_some() {
        73
    } else if error.downcast_ref::<Input>().is_some() {
        66
    } else if error.downcast_ref::<BadData>().is_some()
        || error.chain().any(|cause| cause.downcast_ref::<saring_models::events::EventLogError>().is_some())
    {
        65
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn each_kind_has_its_code_through_contexts() {
        let io = || Err::<(), _>(std::io::Error::other("disk"));
        assert_eq!(code(&io().context(Output("cannot write out.json".into())).unwrap_err()), 73);
        assert_eq!(code(&io().context(Input("cannot read log.jsonl".into())).unwrap_err()), 66);
        assert_eq!(code(&anyhow::Error::new(Refused("worse".into())).context("while fitting")), 3);
        assert_eq!(code(&anyhow::Error::new(Usage("--x".into()))), 64);
        assert_eq!(code(&anyhow::anyhow!("something else")), 1);
    }
}
