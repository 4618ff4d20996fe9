fn main() -> std::process::ExitCode {
    greenlight::cli::main()
}
