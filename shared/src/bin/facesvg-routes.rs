//! Prints the route table (`facesvg::api::routes::ROUTES`) as JSON, for the tools
//! that are not Rust: `cargo run -q -p facesvg --bin facesvg-routes > infra/routes.json`
//! (the local gateway reads that file; `tests/routes.rs` checks it is current).

fn main() {
    let json = serde_json::to_string_pretty(&facesvg::api::routes::ROUTES)
        .expect("the route table serialises");
    println!("{json}");
}
