use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = domtool::Cli::parse();
    dom_bus::init_logging(cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(domtool::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("domtool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
