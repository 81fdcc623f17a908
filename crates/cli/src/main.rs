//! The `entryway` binary: parses the command line and hands over to [`entryway::run`].

fn main() -> std::process::ExitCode {
    entryway::run()
}
