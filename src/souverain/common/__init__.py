"""Cross-cutting pieces every service uses: errors, ids, time, context, policy, audit."""
