//! `unisal`: the UniSAL engine headless.

fn main() {}
