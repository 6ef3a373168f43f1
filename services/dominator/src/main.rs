use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = dominator::Cli::parse();
    dominator::init_logging(cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(dominator::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dominator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
