"""The math pipeline of the paper (and of cDPO): verifiers, sampling, preference pairs, evaluation, and the data
files that pass between them. TRL-free where it can be."""
