"""RLHF: the policy gradient on a language model.

| RL                         | RLHF here                                                     |
|----------------------------|---------------------------------------------------------------|
| policy pi(a|s)             | the causal LM, pi(y_t | x, y_<t) (``sequences.forward``)     |
| state s_t                  | prompt x plus the tokens generated so far                    |
| action a_t                 | the next token                                                |
| episode                    | one response, ending at EOS or ``max_new_tokens``             |
| reward r_t                 | -beta kl_t per token, + the score on the last token           |
| critic V(s_t)              | ``model.ValueHead`` on the LM's last hidden state (PPO)       |
| returns / GAE              | ``pgrad.returns`` over tokens, gamma = 1 (``advantages``)     |
| losses                     | ``pgrad.losses`` (``policy_gradient_loss``, clipped, value)   |
| rollout                    | ``sequences.generate`` (k samples per prompt)                 |
| baseline                   | running mean (REINFORCE) or leave-one-out (RLOO)              |

Modules: ``task`` (the default synthetic task and its hidden score), ``model`` (tiny GPT-2,
tokenizer, loading), ``sequences`` (generation and masks), ``advantages`` (Psi_t), ``sft``,
``reward_model`` (Bradley-Terry), ``rl`` (REINFORCE/RLOO/PPO), ``pipeline`` (run directories),
``commands`` (the CLI).
"""
