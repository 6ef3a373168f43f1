fn main() -> std::process::ExitCode {
    let cli: mdbd::Cli = dom_bus::cli::parse();
    cli.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(async { mdbd::run(cli, dom_bus::shutdown::signalled()).await }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdbd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
