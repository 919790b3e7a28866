//! A part of the configuration that SIGHUP may replace while the collector runs.
//!
//! Readers take the current value when they use it (a request, a delivery pass, a batch, an
//! alert of an engine round); a snapshot taken stays whole after a reload. A reload validates
//! the whole file first and then replaces each part (see `server::Live::reload`); a file with
//! problems changes nothing. Parts are replaced one after the other, so an engine round that
//! straddles a reload may judge one alert by the old routes and the next by the new.

use std::sync::{Arc, RwLock};

pub struct Reloadable<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Reloadable<T> {
    fn clone(&self) -> Self {
        Reloadable(self.0.clone())
    }
}

impl<T> Reloadable<T> {
    pub fn new(value: T) -> Self {
        Reloadable(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The current value: a snapshot that a later reload does not change.
    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

impl<T: Default> Default for Reloadable<T> {
    fn default() -> Self {
        Reloadable::new(T::default())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_outlives_the_reload_and_clones_see_the_new_value() {
        let r = Reloadable::new(1);
        let other = r.clone();
        let before = r.get();
        other.set(2);
        assert_eq!((*before, *r.get()), (1, 2));
    }
}
