fn main() -> std::process::ExitCode {
    let cli: domtool::Cli = dom_bus::cli::parse();
    cli.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(domtool::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("domtool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
