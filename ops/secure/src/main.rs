fn main() -> std::process::ExitCode {
    let cli: domsetup::Cli = dom_bus::cli::parse();
    cli.log.init();
    match domsetup::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("domsetup: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
