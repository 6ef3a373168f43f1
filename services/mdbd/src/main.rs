use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = mdbd::Cli::parse();
    mdbd::init_logging(cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(mdbd::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdbd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
