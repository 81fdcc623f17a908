//! The config store: files → validated documents → last good config per resource → snapshots.
