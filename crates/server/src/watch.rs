//! Watching the config directory and debouncing changes into store reloads.
