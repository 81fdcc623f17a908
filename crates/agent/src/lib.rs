//! entryway-agent
