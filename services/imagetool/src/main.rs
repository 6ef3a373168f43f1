fn main() -> std::process::ExitCode {
    let args = match imagetool::cli::normalise_args(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("imagetool: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli: imagetool::Cli = dom_bus::cli::parse_from(args);
    cli.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(imagetool::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imagetool: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
