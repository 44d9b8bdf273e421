//! Byte-exact YAML setters: rewrite only the scalars marked with $imagepolicy comments.
