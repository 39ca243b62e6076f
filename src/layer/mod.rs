//! Layers: deterministic tar ([`tar`]) compressed on all cores ([`pgzip`]) and digested in the
//! same pass ([`compress`]), or as gzip members that a rebuild copies instead of compressing
//! ([`members`]); reading and applying layers safely ([`apply`]).

pub mod apply;
pub mod compress;
pub mod guard;
pub mod members;
pub mod pgzip;
pub mod read;
pub mod tar;
