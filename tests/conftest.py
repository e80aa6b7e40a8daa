import _profiles
import torch

# The same examples on every run, CI or not; HYPOTHESIS_PROFILE=explore draws new ones.
_profiles.load()

# Two cores: more threads than that only adds contention.
torch.set_num_threads(min(2, torch.get_num_threads()))
