//! entryway-testkit
