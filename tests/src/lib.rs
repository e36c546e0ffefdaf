//! Cross-crate and end-to-end tests (in `tests/tests/`). They run the real `granary` binary
//! built by Cargo for this workspace, as a user would.
