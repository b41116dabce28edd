//! UniSAL Studio, the desktop app: a thin Tauri shell over `unisal-core` and `unisal-data`.
//!
//! Commands parse what the UI sends, call the libraries and map the results into the IPC types of
//! [`ipc`]; there is no SQL and no tensor code here. Images reach the webview only through the `patch`
//! protocol ([`protocol`]), which serves pool patches by id.

pub mod commands;
pub mod demo;
pub mod dirs;
pub mod error;
pub mod eta;
pub mod import;
pub mod ipc;
pub mod protocol;
pub mod recent;
pub mod state;

use state::AppState;
use tauri::Manager;

/// Usage line for `--help` and argument errors.
pub const USAGE: &str = "usage: unisal-studio [--demo | PROJECT.unisal]";

/// Starts the app (blocks until the last window closes).
pub fn run() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let startup = match commands::parse_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let app = tauri::Builder::default()
        .manage(AppState::with_startup(startup))
        .register_asynchronous_uri_scheme_protocol(protocol::SCHEME, |ctx, request, responder| {
            let app = ctx.app_handle().clone();
            // Read the database off the webview's thread.
            tauri::async_runtime::spawn_blocking(move || {
                let state = app.state::<AppState>();
                responder.respond(protocol::handle(&state, &request));
            });
        })
        .invoke_handler(tauri::generate_handler![
            commands::startup_project,
            commands::recent_projects,
            commands::open_project,
            commands::create_project,
            commands::open_demo,
            commands::close_project,
            commands::project_status,
            commands::patch_page,
            import::start_import,
            import::cancel_import,
        ])
        .build(tauri::generate_context!());
    match app {
        Ok(app) => app.run(|_, _| {}),
        Err(error) => {
            eprintln!("UniSAL Studio could not start: {error}");
            std::process::exit(1);
        }
    }
}
