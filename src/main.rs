fn main() {
    std::process::exit(fashionbert::cli::main());
}
