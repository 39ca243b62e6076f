//! Layers: deterministic tar ([`tar`]) compressed on all cores ([`pgzip`]) and digested in the
//! same pass ([`compress`]); reading and applying layers safely ([`apply`]).

pub mod apply;
pub mod compress;
pub mod pgzip;
pub mod read;
pub mod tar;
