//! Behaviour tests (filled below).
