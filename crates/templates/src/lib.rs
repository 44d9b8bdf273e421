//! Go text/template compatible engine with Sprig's hermetic functions, for commit messages.
