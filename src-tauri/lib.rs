//! UniSAL Studio, the desktop app: a thin Tauri shell over `unisal-core`, `unisal-data` and `unisal-train`.
//!
//! Commands parse what the UI sends, call the libraries and map the results into the IPC types of
//! [`ipc`]; there is no SQL and no tensor code here. Images reach the webview only through the `patch`
//! protocol ([`protocol`]), which serves pool patches by id.

pub mod commands;
pub mod demo;
pub mod dirs;
pub mod error;
pub mod eta;
pub mod export;
pub mod import;
pub mod ipc;
pub mod ipc_review;
pub mod ipc_train;
pub mod labels;
pub mod protocol;
pub mod recent;
pub mod review;
pub mod state;
pub mod training;
pub mod webview;

use state::AppState;
use tauri::Manager;

/// Usage line for `--help` and argument errors.
pub const USAGE: &str = "usage: unisal-studio [--demo | PROJECT.unisal]";

/// Starts the app (blocks until the last window closes).
pub fn run() {
    webview::choose_rendering_mode();
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
            labels::label_patch,
            labels::clear_label,
            labels::undo_label,
            labels::set_unsure,
            labels::add_class,
            labels::rename_class,
            labels::set_class_color,
            labels::set_class_hotkey,
            labels::move_class,
            review::query_batch,
            review::review_page,
            review::disagreement_histogram,
            review::rounds,
            review::learning_curve,
            review::network_confusion,
            training::training_options,
            training::start_round,
            training::cancel_round,
            training::training_state,
            export::export_labels,
            export::export_predictions,
            export::export_model,
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
