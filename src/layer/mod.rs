//! Layers: deterministic tar ([`tar`]) compressed and digested in one pass ([`compress`]).

pub mod compress;
pub mod tar;
