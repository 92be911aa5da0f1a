//! The desktop app (eframe/egui): Training and LLM tabs.
