//! The third-party vectors in `../shared/conformance`, each corpus reporting `N/M passed`.

mod dockerfile_parser;
mod dockerignore;
mod reference;
mod shell_lex;
