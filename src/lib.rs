pub use weights_convert;
