fn main() -> std::process::ExitCode {
    let cli: dominator::Cli = dom_bus::cli::parse();
    cli.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(async { dominator::run(cli, dom_bus::shutdown::signalled()).await }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dominator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
