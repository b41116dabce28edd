//! `unisal bench train|infer` end to end on the CPU: one JSON object with the documented fields, and exit code 2
//! for configurations this build or machine cannot run.

use serde_json::Value;
use std::process::{Command, Output};

fn unisal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unisal")).args(args).output().expect("running unisal")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn train_dual_and_infer_print_one_json_object() {
    for (mode, dual) in [("train", false), ("train", true), ("infer", false)] {
        let mut args =
            vec!["bench", mode, "--device", "cpu", "--model", "small", "--size", "32", "--batch", "4"];
        args.extend(["--steps", "2", "--warmup", "1", "--json"]);
        if dual {
            args.push("--dual");
        }
        let out = unisal(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["mode"], mode);
        assert_eq!(v["model"], "small");
        assert_eq!(v["device"], "cpu");
        assert_eq!(v["size"], 32);
        assert_eq!(v["batch"], 4);
        assert_eq!(v["dual"], dual);
        assert!(v["device_name"].as_str().unwrap().starts_with("cpu ("));
        let ips = v["img_per_s"].as_f64().unwrap();
        let ms = v["ms_per_step"].as_f64().unwrap();
        assert!(ips > 0.0 && (ips - 4.0 * 1000.0 / ms).abs() < 1e-6 * ips, "{v}");
        assert!(v["peak_rss_mb"].as_f64().unwrap() > 1.0);
    }
}

#[test]
fn impossible_configurations_exit_with_2_and_say_why() {
    let cases: [(&[&str], &str); 4] = [
        (&["bench", "train", "--device", "tpu"], "invalid device 'tpu'"),
        (&["bench", "train", "--device", "cpu", "--model", "vgg16"], "unknown model 'vgg16'"),
        (&["bench", "infer", "--device", "cpu", "--dual"], "--dual needs train mode"),
        (&["bench", "train", "--device", "cpu", "--size", "16", "--steps", "1"], "S >= 32"),
    ];
    for (args, needle) in cases {
        let out = unisal(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    if !cfg!(feature = "cuda") {
        let out = unisal(&["bench", "train", "--device", "cuda"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("--features cuda"), "{}", stderr(&out));
    }
}
