"""What reads models and runs to judge them: accuracy on each runtime (`evaluation`), field tests on real
recordings (`field`), explanations and drift (`explain`), continuous listening (`streaming`), and the report
(`report`, `markdown`) with its plots."""
