use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = imagetool::Cli::parse_from(imagetool::cli::normalise_args(std::env::args()));
    imagetool::init_logging(cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(imagetool::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imagetool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
