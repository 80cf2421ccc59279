"""The model card's ADPO section: the method and its settings, the training-dynamics plot, and the citations."""

from __future__ import annotations

import textwrap
from pathlib import Path

from .config import ADPOConfig
from .files import PLOT_FILE

CDPO_CITATION = textwrap.dedent("""\
    @inproceedings{lin2025critical,
        title         = {{Critical Tokens Matter: Token-Level Contrastive Estimation Enhances LLM's Reasoning
                          Capability}},
        author        = {Zicheng Lin and Tian Liang and Jiahao Xu and Qiuzhi Liu and Xing Wang and Ruilin Luo and
                         Chufan Shi and Siheng Li and Yujiu Yang and Zhaopeng Tu},
        year          = 2025,
        booktitle     = {International Conference on Machine Learning (ICML)},
        eprint        = {2411.19943},
        archivePrefix = {arXiv},
    }""")

ADPO_CITATION = textwrap.dedent("""\
    @inproceedings{oi2026adpo,
        title         = {{Autoregressive Direct Preference Optimization}},
        author        = {Masanari Oi and Mahiro Ukai and Masahiro Kaneko and Naoaki Okazaki and Nakamasa Inoue},
        year          = 2026,
        booktitle     = {International Conference on Machine Learning (ICML)},
        eprint        = {2602.09533},
        archivePrefix = {arXiv},
    }""")


def adpo_section(args: ADPOConfig, dataset_name: str | None, dpo_citation: str) -> str:
    """The Markdown that follows TRL's model card: ADPO's settings of `args`, the plot if output_dir holds it, and the
    DPO (`dpo_citation`, TRL's) and cDPO citations."""
    section = [
        "",
        "## ADPO settings",
        "",
        f"Trained with {args.method_name}, with the trl_adpo `ADPOTrainer`. ADPO, Autoregressive Direct Preference "
        "Optimization ([arXiv 2602.09533](https://arxiv.org/abs/2602.09533)), extends DPO "
        "([arXiv 2305.18290](https://arxiv.org/abs/2305.18290)) by moving its sum over tokens outside the "
        "log-sigmoid, one log-sigmoid per segment of the completion.",
    ]
    if args.critical_tokens:
        section += [
            "",
            "The log-ratios are weighted by critical-token weights from contrastive estimation, as in cDPO "
            "([Lin et al. 2025, arXiv 2411.19943](https://arxiv.org/abs/2411.19943)): a positive and a negative "
            "model score each token with p_ce = softmax((1 + gamma) z_pos - gamma z_neg); rejected tokens weigh "
            "1 - p_ce" + (", chosen tokens p_ce." if args.weight_chosen_tokens else ", chosen tokens 1."),
        ]
    section += [
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| method | {args.method_name} |",
        f"| granularity | {args.granularity_description} |",
        f"| segment reduction | {args.segment_reduction} |",
        f"| beta | {args.beta} |",
        f"| label smoothing | {args.label_smoothing} |",
    ]
    if args.loss_term_weights[1] > 0:
        section.append(f"| NLL term of the chosen completions (RPO), weight | {args.loss_term_weights[1]} |")
    if args.critical_tokens:
        section += [
            f"| positive model | {args.positive_model} |",
            f"| negative model | {args.negative_model} |",
            f"| critical-token gamma | {args.critical_token_gamma} |",
        ]
    section += [f"| dataset | {dataset_name or 'not recorded'} |", ""]
    if (Path(args.output_dir) / PLOT_FILE).is_file():
        section += [
            "## Training dynamics",
            "",
            "Log-probs of the chosen (solid) and rejected (dashed) completions during training, with the reward "
            "margin, the reward and segment accuracies and the segment margin:",
            "",
            f"![training dynamics]({PLOT_FILE})",
            "",
        ]
    section += ["Cite DPO as:", "", "```bibtex"]
    section += [dpo_citation, "```", ""]
    if args.critical_tokens:
        section += ["Cite cDPO's contrastive estimation as:", "", "```bibtex", CDPO_CITATION, "```", ""]
    return "\n".join(section)
