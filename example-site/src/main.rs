//! `example-site`: the site's binary is its manage command.

fn main() -> std::process::ExitCode {
    example_site::manage::main()
}
