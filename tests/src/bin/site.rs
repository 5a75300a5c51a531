//! The example site's manage command, built inside the test package so integration tests can
//! start it as a real process (`CARGO_BIN_EXE_site`).

fn main() -> std::process::ExitCode {
    example_site::manage::main()
}
