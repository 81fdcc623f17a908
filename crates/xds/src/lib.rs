//! entryway-xds
