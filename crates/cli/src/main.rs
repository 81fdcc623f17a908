//! The `entryway` binary: parses the command line and hands over to [`entryway::run`].

// mimalloc: generating and encoding a large mesh's configuration allocates and frees many
// small buffers, where the system allocator spent 10-20% of the time (generate_10k bench).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    entryway::run()
}
