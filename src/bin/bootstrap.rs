//! The AWS Lambda function's executable (custom runtime `provided.al2023`): `greenlight cleanup`
//! on a schedule. Everything is in [`greenlight::lambda`].

fn main() -> std::process::ExitCode {
    greenlight::lambda::main()
}
