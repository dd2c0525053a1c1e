//! `hookgate completions bash|zsh|fish` and `hookgate man`, from outside.

use std::process::Command;

use crate::support::binary;

const SUBCOMMANDS: [&str; 7] = ["serve", "check", "send", "events", "replay", "completions", "man"];

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_name_every_subcommand_and_bash_parses_them() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no {sub:?} in:\n{script}");
        }
        // Options of a subcommand too (fish spells `--role` as `-l role`).
        let role = if shell == "fish" { "-l role" } else { "--role" };
        assert!(script.contains(role) && script.contains("ingest"), "{shell}:\n{script}");
        let file = dir.path().join(format!("hookgate.{shell}"));
        std::fs::write(&file, &script).unwrap();
        // Each shell checks the syntax without running it, where it is installed.
        let check: &[&str] = match shell {
            "bash" => &["bash", "-n"],
            "zsh" => &["zsh", "-n"],
            _ => &["fish", "--no-execute"],
        };
        match Command::new(check[0]).args(&check[1..]).arg(&file).output() {
            Ok(out) => assert!(out.status.success(), "{shell} -n: {}", String::from_utf8_lossy(&out.stderr)),
            Err(_) if shell != "bash" => println!("{shell} is not installed: its syntax check is skipped"),
            Err(e) => panic!("bash: {e}"),
        }
    }
    let out = Command::new(binary()).args(["completions", "powershell"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: bash, zsh, fish"));
}

#[test]
fn bash_completion_completes_subcommands_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookgate.bash");
    std::fs::write(&file, stdout_of(&["completions", "bash"])).unwrap();
    // What bash's programmable completion would offer after `hookgate se` and `hookgate serve --role `.
    let probe = |words: &str, cword: usize| {
        let script = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; \
             _hookgate hookgate \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let subs = probe("hookgate se", 1);
    assert!(subs.lines().any(|l| l == "serve") && subs.lines().any(|l| l == "send"), "{subs}");
    assert!(!subs.lines().any(|l| l == "check"), "{subs}");
    let roles = probe("hookgate serve --role ''", 3);
    for role in ["ingest", "worker", "all"] {
        assert!(roles.lines().any(|l| l == role), "{role} not offered: {roles}");
    }
}

#[test]
fn man_prints_a_page_with_every_subcommand_and_its_options() {
    let page = stdout_of(&["man"]);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    assert!(page.contains(".TH hookgate 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(&format!(".SH \"HOOKGATE {}\"", sub.to_uppercase())), "no section for {sub}:\n{page}");
    }
    assert!(page.contains("\\-\\-config") && page.contains("\\-\\-role"), "{page}");
    // groff renders it without complaint, where it is installed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookgate.1");
    std::fs::write(&file, &page).unwrap();
    match Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]).arg(&file).output() {
        Ok(out) => assert!(out.stderr.is_empty(), "groff: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => println!("groff is not installed: the page is not rendered"),
    }
}
