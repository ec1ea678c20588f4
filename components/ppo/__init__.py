"""The project's own PPO for language models (TRL deleted its PPOTrainer; see DESIGN.md)."""
