//! entryway-server
