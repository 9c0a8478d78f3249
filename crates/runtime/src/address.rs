//! Object addresses: `(class, name)`, exactly one live instance each.

use std::fmt;
use std::sync::Arc;

/// The address of one durable object.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub class: Arc<str>,
    pub name: Arc<str>,
}

impl Address {
    pub fn new(class: &str, name: &str) -> Self {
        Address {
            class: class.into(),
            name: name.into(),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.class, self.name)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.class, self.name)
    }
}
