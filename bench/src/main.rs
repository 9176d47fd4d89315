use std::process::ExitCode;

use clap::Parser;
use laminar_bench::args::{Cli, Command, Mode, RunArgs};
use laminar_bench::{compare, run};

/// Exit status when verification finds lost, duplicated or reordered records.
const EXIT_VERIFY_FAILED: u8 = 1;
/// Exit status when the run itself could not be done (bad arguments, unreachable broker).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mode, args) = match cli.command {
        Command::Compare(args) => {
            return match compare::run(&args) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        Command::Produce(args) => (Mode::Produce, args),
        Command::Consume(args) => (Mode::Consume, args),
        Command::E2e(args) => (Mode::E2e, args),
        Command::Verify(args) => (Mode::Verify, args),
    };
    run_mode(mode, &args)
}

fn run_mode(mode: Mode, args: &RunArgs) -> ExitCode {
    // Before the runtime exists: some knobs (--threads) shape the runtime itself.
    if let Err(e) = args.validate(mode) {
        return fail(&e);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let report = match runtime.block_on(run::run(mode, args)) {
        Ok(report) => report,
        Err(e) => return fail(&e),
    };
    print!("{}", report.summary());
    if let Some(path) = args.json_path(mode) {
        match report.write(&path) {
            Ok(()) => println!("result written to {}", path.display()),
            Err(e) => return fail(&format!("writing {}: {e}", path.display())),
        }
    }
    match &report.verify {
        Some(v) if !v.passed => ExitCode::from(EXIT_VERIFY_FAILED),
        _ => ExitCode::SUCCESS,
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("laminar-bench: {message}");
    ExitCode::from(EXIT_ERROR)
}
