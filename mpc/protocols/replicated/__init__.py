"""Three parties, no dealer: 2-out-of-3 replicated secret sharing (Araki et al. 2016; ABY3).

Party i holds a replicated share as one uint64 array of shape (2, *S): [0] = x_i and
[1] = x_{(i+1) % 3}, with x = x_0 + x_1 + x_2 mod 2^64.
"""
